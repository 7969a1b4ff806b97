-- compare.my_worklist filters compare.finding by the reader's bureau role. As a plain view
-- its filter was no barrier: the planner may run a cheap function of the reader's own
-- (one that prints its argument) on every finding before the role filter, and so print
-- other bureaus' work lists. A security barrier view evaluates the reader's conditions
-- only on rows its own filter has passed. (The tax tables' row-level security policies
-- are barriers already.)
alter view compare.my_worklist set (security_barrier = true);
