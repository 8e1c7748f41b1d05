"""Human-readable sizes and ages for messages and tables."""


def human_bytes(n: int | float | None) -> str:
    n = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def human_age(seconds: float) -> str:
    """``3d``, ``5h``, ``12m``, ``40s``: the largest whole unit."""
    secs = int(seconds)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= n:
            return f"{secs // n}{unit}"
    return f"{secs}s"


def human_span(seconds: float) -> str:
    """``9 min 1 s``, ``2 h 5 min``, ``3 d 4 h``, ``0 s``: the two largest units, for distances in time."""
    secs = int(abs(seconds))
    parts = []
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if secs >= n or (unit == "s" and not parts):
            parts.append(f"{secs // n} {unit}")
            secs %= n
        elif parts:
            break
    return " ".join(parts[:2])
