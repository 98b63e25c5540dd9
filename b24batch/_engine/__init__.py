"""The one engine both protocols run on: plan, send, repeat what is safe, build; internal.

It never asks which protocol it holds (each is a ``Protocol`` value from ``_protocols``) and
imports no face. Users import from ``b24batch``.
"""
