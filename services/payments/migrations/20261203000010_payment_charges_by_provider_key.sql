-- A provider's notification names the key a charge was sent under (its provider key:
-- the charge key, or a repayment's key): NotifyCharge finds the charge by it. Keys are
-- hashes of distinct inputs, so one key names one charge.
CREATE UNIQUE INDEX payment_charges_by_provider_key ON payment_charges (provider_key);
