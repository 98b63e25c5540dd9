"""OAuth applications' tokens: their records, the refresh request, one refresh across processes.

Nothing here is public: ``b24batch.apps`` is the face (``OAuthApp``).
"""
