"""Prepaid credits held in Lago wallets, enforced per call (issue 17).

Lago has no hold primitive and lowers a wallet's settled balance only when an invoice applies
credits, so the gate lives here: available = the applicable wallets' settled balance − the usage
settled since that Lago has not applied yet − open holds. Modules: wallets.py (the wallet object,
exact money), reader.py (GET /wallets, current_usage), seed.py (where the unapplied usage starts),
account.py (one payer's arithmetic), ledger.py (where the check and the hold happen: this process,
holds.py), redis_ledger.py (the same, shared by every process through Redis: lua/credit_hold.lua),
tally.py (this process's usage in the shared tally, counted once), gate.py (admit/settle/refresh),
calls.py (the proxy's wiring), signature.py (webhook signatures), settings.py (config), charge.py
(what a settled call debits).
"""
