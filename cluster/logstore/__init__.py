"""The PostgreSQL log store: what people searched, what they clicked, and learning-loop runs.

Two sides sharing one schema (migrate.py) and one set of records (records.py):

writer = LogWriter(settings)          # the ingress: a thread, a pool, a write-ahead file
writer.log_search(SearchRecord(query=..., results=[ResultItem(doc_id=..., rank=1, score=...)]))
writer.log_feedback(FeedbackRecord(search_id=..., doc_id=..., kind="click"))  # True: on disk
reader = LogReader(settings)          # everyone else: one connection, no thread, no buffer
reader.feedback_since(watermark)      # rows joined with their search, for the learning loop
"""

from cluster.logstore.reader import LogReader
from cluster.logstore.records import FEEDBACK_KINDS, FeedbackRecord, ResultItem, SearchRecord
from cluster.logstore.writer import LogWriter

__all__ = [
    "FEEDBACK_KINDS",
    "FeedbackRecord",
    "LogReader",
    "LogWriter",
    "ResultItem",
    "SearchRecord",
]
