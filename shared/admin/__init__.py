"""The ops dashboard's API (the ``admin`` function): read models over Postgres and the flag documents.

``queries`` holds the SQL read models; ``api`` binds them and ``shared.flags`` / ``shared.quotas`` to
routes, behind the ops role.
"""
