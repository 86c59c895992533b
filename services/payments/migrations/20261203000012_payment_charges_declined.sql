-- A rider's declined charges (arrears), which every tap asks about: most riders have
-- none, and this answers that from the index alone instead of reading all of the
-- rider's charges. Status 4 is DECLINED (src/charge.rs).
CREATE INDEX payment_charges_declined ON payment_charges (transit_account) WHERE status = 4;
