"""Gradio tabs: one module per tab, each with ``build()``; handlers are thin adapters."""
