-- The authenticated identity an alert came in with (NULL: unauthenticated), which decides
-- whether its incident may start an automatic action.
ALTER TABLE alerts ADD COLUMN source TEXT;
