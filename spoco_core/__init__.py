"""SPOCO: instance segmentation from sparse object labels with pixel embeddings.

Pure method code: no Streamlit, no SQL (see docs/contracts.md).
"""

__version__ = "0.1.0"
