"""Example handlers, one module per task type (the video and lidar types share one): each logs a
one-line summary of the result.

Importing this package registers them all. Copy one as the start of your own handler module
and list that module in CALLBACK_HANDLERS.
"""

from workers.handlers import (  # noqa: F401 - imported for their @handles registrations
    annotation,
    audiotranscription,
    categorization,
    comparison,
    datacollection,
    documenttranscription,
    file_results,
    imageannotation,
    namedentityrecognition,
    phonecall,
    textcollection,
    transcription,
)
