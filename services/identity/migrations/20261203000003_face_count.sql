-- How many people have a face template, kept as one row that every template insert and
-- delete updates in its own transaction (SECURITY.md, face finding F2): the filing count
-- was `count(*)` over face_templates inside the face writes' lock, so every enrolment
-- scanned the whole table while everyone else's face writes waited.
CREATE TABLE face_template_count (
    one      BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    enrolled BIGINT NOT NULL CHECK (enrolled >= 0)
);
INSERT INTO face_template_count (one, enrolled)
    SELECT TRUE, count(*) FROM face_templates;
