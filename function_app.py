"""Azure Functions composition root (Python v2 model): one blueprint per concern, nothing else.

Nothing happens at import time: no clients, no secrets, no network (the host gives an app 30 s
to start, and a failing import means "0 functions found"). See docs/architecture.md.
"""

import azure.functions as func

from auditor.functions import audit, health, remediation

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (health.blueprint, audit.blueprint, remediation.blueprint):
    app.register_functions(blueprint)
