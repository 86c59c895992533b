-- Refund postings (kind 4): part of a charge returned when a trip charged without its
-- entry or exit is re-priced after an offline gate uploads the missing tap. At most one
-- per charge: its posting id is derived from the charge and the kind.
ALTER TABLE payment_ledger DROP CONSTRAINT payment_ledger_kind_check;
ALTER TABLE payment_ledger ADD CONSTRAINT payment_ledger_kind_check CHECK (kind IN (1, 2, 3, 4));
