"""Microsoft Graph adapter: the SMTP AUTH sign-in log (`signins.py`)."""
