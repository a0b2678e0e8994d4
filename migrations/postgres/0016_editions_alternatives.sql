-- Editions and routine alternatives (issue 11, part 6 and the alternatives of part 1).
--
-- Every rule version belongs to one edition of a standard (a rule set: AS1851 2012.1.0,
-- AS2293.2 2019.1.0, ...). Rows stored before editions existed are AS 1851-2012, except the
-- emergency-lighting and exit-sign rules, which are AS/NZS 2293.2:2019.
ALTER TABLE rules ADD COLUMN rule_set_code TEXT NOT NULL DEFAULT 'AS1851';
ALTER TABLE rules ADD COLUMN rule_set_version TEXT NOT NULL DEFAULT '2012.1.0';
-- The rule code this routine may replace on an asset (e.g. yearly instead of six-monthly
-- doors); NULL for a routine that is not an alternative.
ALTER TABLE rules ADD COLUMN alternative_to TEXT;
UPDATE rules SET rule_set_code = 'AS2293.2', rule_set_version = '2019.1.0' WHERE code LIKE 'AS2293-%';
UPDATE rules SET alternative_to = 'AS1851-12-6M-FD' WHERE code = 'AS1851-12-12M-FD';
UPDATE rules SET alternative_to = 'AS1851-12-6M-SD' WHERE code = 'AS1851-12-12M-SD';
CREATE INDEX rules_edition_idx ON rules (rule_set_code, rule_set_version);

-- A building pins one edition per standard: `rule_set_code`/`rule_set_version` is its AS 1851
-- edition (as before); `editions` holds its pins for the other standards as a JSON object
-- {standard code: edition version}. Existing buildings keep AS 1851-2012 and are pinned to
-- AS/NZS 2293.2:2019, the edition their emergency-lighting rules already followed.
ALTER TABLE buildings ADD COLUMN editions JSONB NOT NULL DEFAULT '{}';
UPDATE buildings SET editions = '{"AS2293.2":"2019.1.0"}'::jsonb;

-- Routine alternatives chosen per asset: a JSON object {default rule code: alternative code}.
ALTER TABLE assets ADD COLUMN rule_alternatives JSONB NOT NULL DEFAULT '{}';
