-- One role and one database per service that keeps data in PostgreSQL (the role and
-- database names in k8s/base/*/config.yaml's database.url).
CREATE ROLE identity LOGIN;
CREATE DATABASE identity OWNER identity;
CREATE ROLE revocation LOGIN;
CREATE DATABASE revocation OWNER revocation;
CREATE ROLE payments LOGIN;
CREATE DATABASE payments OWNER payments;
