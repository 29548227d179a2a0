"""Names every workflow shares: the task queue and the custom search attributes of the contract."""
from temporalio import workflow
from temporalio.common import SearchAttributeKey

TASK_QUEUE = "retailflow"

BUSINESS_KEY = SearchAttributeKey.for_keyword("BusinessKey")
CHANNEL = SearchAttributeKey.for_keyword("Channel")
STAGE = SearchAttributeKey.for_keyword("Stage")
LOCATION_IDS = SearchAttributeKey.for_keyword_list("LocationIds")
SKUS = SearchAttributeKey.for_keyword_list("Skus")
SLA_BREACHED = SearchAttributeKey.for_bool("SlaBreached")
OPEN_EXCEPTIONS = SearchAttributeKey.for_int("OpenExceptions")

# name -> Temporal type, as `temporal operator search-attribute create` and docker-compose register them.
SEARCH_ATTRIBUTES: dict[str, str] = {
    "BusinessKey": "Keyword",
    "Channel": "Keyword",
    "Stage": "Keyword",
    "LocationIds": "KeywordList",
    "Skus": "KeywordList",
    "SlaBreached": "Bool",
    "OpenExceptions": "Int",
}

# Release 2 changes the commands of every process workflow (issue 17: the books across process boundaries). One
# patch for the whole release, asked first thing in each process's __init__: a run started on release 1.0 replays
# without the marker, gets False and keeps the 1.0 path to its end (the SDK memoizes a patch per run); a run
# started on release 2 records the marker as its first command and takes the new path everywhere. RELEASES.md
# names release 1.0; docs/versioning.md has the procedure.
RELEASE_2 = "release-2"


def on_release_2() -> bool:
    """True for a run started on release 2 or later; call once, before the run issues any other command."""
    return workflow.patched(RELEASE_2)
