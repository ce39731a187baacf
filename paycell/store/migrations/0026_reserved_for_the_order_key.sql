-- Number 0026 belongs to the payment order's key (issue 12, branch `orderkey`), developed in
-- parallel with 0027 (branch `ledgerkey`), which does not depend on it. This file only keeps the
-- numbering without gaps on the `ledgerkey` branch: the merge replaces it with the real 0026.
SELECT 1;
