"""Measurement: MACs per image from executed shapes (throughput and hardware cost alongside)."""

from vitaccel.measure.macs import count_macs, macs, macs_over
