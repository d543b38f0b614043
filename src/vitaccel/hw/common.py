"""Building blocks shared by the circuit generators: errors, leading-one detector, shifters, overflow."""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, Value, signed, unsigned

from vitaccel.errors import HardwareError

MAX_LANES = 256          # adder-tree width G the generators build
MAX_WIDTH = 1024         # widest internal datapath (bits) the generators build


def refuse(key: str, value: object, allowed: str) -> HardwareError:
    """A HardwareError naming the config key, its value and what the circuits allow."""
    return HardwareError(f"{key}: value {value!r} is not allowed for the circuits; {allowed}")


def leading_one(m: Module, x: Value, name: str) -> Signal:
    """Position of the highest set bit of the unsigned ``x`` (0 when x is 0): a priority encoder
    (written as a priority chain, which synthesis restructures; the simulator settles it in one step)."""
    pos = Signal(range(max(len(x), 2)), name=name)
    for i in range(len(x)):
        with m.If(x[i]):
            m.d.comb += pos.eq(i)
    return pos


def shift_right_sticky(m: Module, x: Value, amount: Value, name: str) -> tuple[Signal, Signal]:
    """Right shifter of the unsigned ``x`` by ``amount``, and the OR of every bit shifted out (sticky)."""
    out, st = Signal(len(x), name=f"{name}_out"), Signal(name=f"{name}_sticky")
    mask = (Const(1, len(x) + 1) << amount) - 1
    m.d.comb += [out.eq(x >> amount), st.eq((x & mask[:len(x)]) != 0)]
    return out, st


def signed_range(bits: int) -> tuple[int, int]:
    return -2 ** (bits - 1), 2 ** (bits - 1) - 1


def overflow(x: Value, bits: int, mode: str) -> Value:
    """``x`` in the signed ``bits``-bit range: clamp (``saturate``) or two's complement (``wrap``)."""
    if mode == "wrap":
        return x[:bits].as_signed() if len(x) >= bits else x
    lo, hi = signed_range(bits)
    return Mux(x > hi, Const(hi, signed(bits)), Mux(x < lo, Const(lo, signed(bits)), x))


def drop_lsbs(x: Value, drop: int, rounding: str) -> Value:
    """Signed ``x`` without its low ``drop`` bits: floor, half up, or floor with the LSB forced to 1."""
    if drop == 0:
        return x
    if rounding == "nearest":
        return (x + (1 << (drop - 1))) >> drop
    if rounding == "unbiased":
        return (x >> drop) | 1
    return x >> drop


def absolute(x: Value) -> Value:
    """|x| of a signed value as an unsigned value of the same width (|-2^(n-1)| fits)."""
    return Mux(x < 0, -x, x).as_unsigned()[:len(x)]


def clog2(n: int) -> int:
    """Bits to hold 0..n."""
    return max(1, int(n).bit_length())


def check_width(key: str, width: int) -> None:
    """Refuse datapaths wider than MAX_WIDTH bits."""
    if width > MAX_WIDTH:
        raise refuse(key, width, f"internal datapaths of at most {MAX_WIDTH} bits are built")


__all__ = ["MAX_LANES", "MAX_WIDTH", "absolute", "check_width", "clog2", "drop_lsbs", "leading_one", "overflow",
           "refuse", "shift_right_sticky", "signed_range", "unsigned"]
