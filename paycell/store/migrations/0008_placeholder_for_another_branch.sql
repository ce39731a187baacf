-- Placeholder: migration 0008 belongs to another branch of issue 6. It exists here only so that
-- this branch's 0009 has no gap; delete this file when merging that branch's 0008.
SELECT 1;
