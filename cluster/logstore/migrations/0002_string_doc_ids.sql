-- Documents have string ids (a user's corpus names its own): feedback.pid (bigint) becomes
-- feedback.doc_id (text), and each stored result's "pid" becomes "doc_id", a string.

ALTER TABLE feedback RENAME COLUMN pid TO doc_id;
ALTER TABLE feedback ALTER COLUMN doc_id TYPE text USING doc_id::text;

UPDATE searches
   SET results = (
       SELECT COALESCE(jsonb_agg(
                  CASE WHEN r ? 'pid'
                       THEN (r - 'pid') || jsonb_build_object('doc_id', r ->> 'pid')
                       ELSE r END
                  ORDER BY ord), '[]'::jsonb)
         FROM jsonb_array_elements(results) WITH ORDINALITY AS e (r, ord))
 WHERE jsonb_path_exists(results, '$[*].pid');
