"""Stores: one ``typing.Protocol`` per kind of record, each with memory, SQL and Redis versions."""
