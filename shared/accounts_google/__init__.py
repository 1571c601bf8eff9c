"""A rep's Google account, from connect to revocation.

* ``oauth`` -- the authorization-code flow with PKCE and a signed single-use ``state``; the refresh
  token goes to the secret store, the connection's status and scopes to ``reps``.
* ``refresh`` -- the scheduled run: refresh every connected rep, renew Gmail watches, detect revocation.
* ``gmail_push`` -- Gmail push notifications: history sync, reply detection, sent mail as voice samples.
* ``calendar`` -- meeting slots from the rep's free/busy, and spotting a lead who asks for a meeting.
* ``drive_folder`` -- a Drive folder imported as one sample per file.
* ``api`` / ``webhook_gmail`` -- the HTTP routes (``token-refresh`` and ``webhook /gmail``).

Capabilities take their dependencies as arguments: ``deps`` (the container: ``db``, ``store``,
``secrets``, ``tasks``, ``crm``, ``settings``) and ``google``, the ``GoogleAccount`` port
(``shared.accounts_google.ports``).
"""

CONNECTED, DISCONNECTED, REVOKED = "connected", "disconnected", "revoked"
