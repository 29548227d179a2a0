"""The names a process is found by: the task queue and the custom search attributes of the contract.

Below the workflows that set them and the door, dispatch and read API that start and query by them.
"""
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
