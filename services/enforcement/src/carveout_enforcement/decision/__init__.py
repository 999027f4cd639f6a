"""The decision API, one path: ``POST /v1/decisions`` read once (:mod:`.wire`), decided once
(:mod:`.decide`), answered by the lean endpoint app.py installs (:mod:`.endpoint`)."""
