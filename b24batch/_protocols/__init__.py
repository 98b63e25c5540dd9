"""What differs between REST 3.0 and the classic batch, one ``Protocol`` value each; internal.

Pure: encoding, decoding, references and list routes, no I/O. Users import from ``b24batch``.
"""
