"""How much memory the machine (or the container's limit) leaves a run, so that a run or a
partition that cannot fit is refused with its estimate before it allocates, not killed midway."""

from pathlib import Path

from flcli.errors import FLError

CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def available_bytes() -> int | None:
    """MemAvailable of /proc/meminfo, capped by a cgroup limit; None where neither is known."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit in CGROUP_LIMITS:
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            found.append(int(text))
    return min(found) if found else None


def gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def refuse_beyond_memory(estimate: float, what: str, fix: str) -> None:
    """FLError when estimate (bytes) exceeds the memory available."""
    available = available_bytes()
    if available is not None and estimate > available:
        raise FLError(
            f"{what} needs about {gb(estimate)} of memory, {gb(available)} is available; {fix}"
        )
