"""Azure Functions blueprints (Python v2 model), one per concern. The only package that imports
`azure.functions`. `function_app.py` registers each; nothing happens at import time."""
