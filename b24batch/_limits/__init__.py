"""The client-side limits (request rate, operating time) and the stores that keep their numbers.

Internal: the layout may change. Users import ``RateLimit``, ``LimitState``, ``LimitStore``,
``RedisStore`` and ``SQLiteStore`` from ``b24batch``.
"""
