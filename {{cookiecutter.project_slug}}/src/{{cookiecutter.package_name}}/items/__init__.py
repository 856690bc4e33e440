"""The example resource: a small ``items`` table behind create, list, get and delete.

``router.py`` and ``schemas.py`` are written once against ``contract.py``'s
``ItemStore``; ``store.py`` and ``models.py`` are the ORM's own.
"""
