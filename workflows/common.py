"""The release patch every process workflow asks first (docs/versioning.md)."""
from temporalio import workflow

# Release 3 (issues 18, 19, 20) rewrites every process on one wiring with fewer actions. Each process's entry asks
# this patch first thing in __init__: a run started on release 1.0 or 2.0 replays without the marker, gets False
# and is handed to its frozen implementation in workflows/release_2/ for its whole life (the SDK memoizes a patch
# per run); a run started on release 3 records the marker as its first command. RELEASES.md names release 2.0.
RELEASE_3 = "release-3"


def on_release_3() -> bool:
    """True for a run started on release 3 or later; call once, before the run issues any other command."""
    return workflow.patched(RELEASE_3)
