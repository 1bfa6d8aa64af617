"""The broker: Redis keys (``conveyor.keys``), Lua scripts and the sync and async clients."""

from .redis import AsyncBroker, EnqueueItem, Failure, Fetched, Pushed, SyncBroker

__all__ = ["AsyncBroker", "EnqueueItem", "Failure", "Fetched", "Pushed", "SyncBroker"]
