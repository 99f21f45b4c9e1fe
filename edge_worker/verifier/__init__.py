"""The verifier: a trusted reference model that checks workers' answers (``routing.verification``)."""
