"""Measurement: MACs per image from executed shapes (throughput and hardware cost alongside)."""

from vitaccel.measure.mac_count import count_macs, macs, macs_over

__all__ = ["count_macs", "macs", "macs_over"]
