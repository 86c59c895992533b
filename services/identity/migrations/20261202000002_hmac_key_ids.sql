-- Key ids for the two HMAC keys (security review, finding 9), and the transit account
-- stored at enrolment (finding 8: it must stay stable whatever key rotations follow,
-- and goes only to the services that ask GetTransitAccount).
--
-- document_key_id: the id of the document key that made document_hash. Rows made
-- before ids existed were hashed under the one key configured then, which is id 1.
-- Lookups hash the presented document under every configured key, so the unique index
-- below still allows one enrolled row per hash; the store serialises enrolments of one
-- document across its hashes (advisory locks) so that two keys cannot each enrol it.
--
-- transit_account / pseudonym_key_id: the pseudonym derived once at enrolment and the
-- id of the key that derived it. Rows from before have no stored value (NULL); theirs
-- is derived under key 1, which stays configured as a previous key for them.
ALTER TABLE subjects
    ADD COLUMN document_key_id  SMALLINT NOT NULL DEFAULT 1 CHECK (document_key_id >= 1),
    ADD COLUMN transit_account  TEXT CHECK (transit_account ~ '^[0-9a-f]{32}$'),
    ADD COLUMN pseudonym_key_id SMALLINT NOT NULL DEFAULT 1 CHECK (pseudonym_key_id >= 1);

-- Which rows still need a previous document key (keys/README.md).
CREATE INDEX subjects_document_key ON subjects (document_key_id);
