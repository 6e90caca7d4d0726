"""Actors: one module per actor type, each owning one domain object or resource."""
