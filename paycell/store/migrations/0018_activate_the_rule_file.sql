-- An activation may put the rule file back in force (issue 8): a NULL version is version 0, the
-- file each process reads (PAYCELL_RISK_RULES_FILE, else paycell/rules/default.rules). Without
-- it, an operator who activated a stored rule set could never return to the shipped rules except
-- by storing their text as one more version, which then no longer follows paycell's upgrades.
ALTER TABLE risk_rule_set_activation ALTER COLUMN version DROP NOT NULL;
COMMENT ON COLUMN risk_rule_set_activation.version IS 'the rule set put in force; NULL: the rule file (version 0)';
