"""The error type of ``vitaccel.emulate``: bad input, reported to users without a traceback."""


class EmulateError(ValueError):
    """A model, config, calibration or option that cannot be emulated; the message says why and what to do."""

    user_error = True


def no_capturable_op(model_type: str) -> EmulateError:
    """The error for a model whose forward ran no matrix product the emulator can capture."""
    return EmulateError(f"model: {model_type} ran no capturable matrix product (nn.Linear, nn.Conv2d, "
                        "F.linear, matmul/mm/bmm/@, F.scaled_dot_product_attention): nothing to emulate")
