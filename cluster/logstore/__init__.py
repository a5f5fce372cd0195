"""The PostgreSQL log store: what people searched, what they clicked, and learning-loop runs.

logs = LogStore(settings)          # pool + migrations; PostgreSQL may even be down
logs.log_search(SearchRecord(query=..., results=[ResultItem(pid=..., rank=1, score=...)]))
logs.log_feedback(FeedbackRecord(search_id=..., pid=..., kind="click"))
logs.feedback_since(watermark)     # rows joined with their search, for the learning loop
"""

from cluster.logstore.records import FEEDBACK_KINDS, FeedbackRecord, ResultItem, SearchRecord
from cluster.logstore.store import LogStore

__all__ = ["FEEDBACK_KINDS", "FeedbackRecord", "LogStore", "ResultItem", "SearchRecord"]
