-- Placeholder: migration 0011 belongs to another branch of issue 7. It exists here only so that
-- this branch's 0012 has no gap; delete this file when merging that branch's 0011.
SELECT 1;
