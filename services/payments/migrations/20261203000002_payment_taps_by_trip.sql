-- A void reads the other taps of its trip (a later repeat at another gate keeps the
-- trip as it stands): taps by trip.
CREATE INDEX payment_taps_by_trip ON payment_taps (trip_id);
