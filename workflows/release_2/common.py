"""The release patches every process workflow asks (docs/versioning.md)."""
from temporalio import workflow

# Release 2 changes the commands of every process workflow (issue 17: the books across process boundaries). One
# patch for the whole release, asked first thing in each process's __init__: a run started on release 1.0 replays
# without the marker, gets False and keeps the 1.0 path to its end (the SDK memoizes a patch per run); a run
# started on release 2 records the marker as its first command and takes the new path everywhere. RELEASES.md
# names release 1.0; docs/versioning.md has the procedure.
RELEASE_2 = "release-2"


def on_release_2() -> bool:
    """True for a run started on release 2 or later; call once, before the run issues any other command."""
    return workflow.patched(RELEASE_2)
