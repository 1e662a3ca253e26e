"""Prepaid credits held in Lago wallets, enforced per call (issue 17).

Lago has no hold primitive and lowers a wallet's settled balance only when an invoice applies
credits, so the gate lives here: available = the applicable wallets' settled balance − what this
process settled since that balance was read that Lago has not applied yet − open holds. Modules:
wallets.py (the wallet object, exact money), reader.py (GET /wallets), account.py (one payer's
arithmetic), holds.py (the hold store interface), gate.py (admit/settle/refresh), signature.py
(webhook signatures), settings.py (config), charge.py (what a settled call debits).
"""
