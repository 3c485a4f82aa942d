"""NU-MCC and MCC: single-view RGB-D to coloured 3D points (in progress: surface extraction
from unsigned distance fields, :mod:`numcc.udf`)."""
