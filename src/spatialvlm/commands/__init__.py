"""Subcommands of the ``spatialvlm`` command, one module each (see ``spatialvlm.cli``)."""


def parse_lengths(text: str) -> tuple[int, ...]:
    """``--lengths`` of the synthetic memory stream: comma-separated positive frame counts."""
    try:
        lengths = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--lengths must be comma-separated integers, got {text!r}") from None
    if not lengths or min(lengths) < 1:
        raise ValueError(f"--lengths needs at least one positive length, got {text!r}")
    return lengths
