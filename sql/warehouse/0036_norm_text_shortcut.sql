-- core.norm_text without normalizing what is already normalized. A rebuild computes it
-- three times for every enterprise's record of each bureau (name, legal representative,
-- address), the by-key and set-wise refreshes for every record they read, and the
-- unlicensed-business rule for every report: 0.78 µs a call on PostgreSQL 15, of which
-- normalize(s, NFKC) is about two thirds, although nearly every bureau's text already is
-- in NFKC. `s is nfkc normalized` answers that with Unicode's quick check (a table lookup
-- a character) in a third of the time, and normalize runs only when it says no: 0.44 µs
-- a call on 1M names, addresses and legal representatives of the capture bench (a 1M
-- rebuild computes 3M of them).
--
-- The results cannot change: a string in NFKC is its own normalization (what
-- `is nfkc normalized` means), and NULL still gives NULL (`null is nfkc normalized` is
-- NULL, so normalize(NULL) runs). The function is no longer declared strict, because
-- PostgreSQL inlines a strict SQL function only when its body is strict too, which a CASE
-- is not: a function call that is not inlined costs more than the shortcut saves.
-- tests/compare.rs compares it with the expression it replaces on generated texts.

create or replace function core.norm_text(s text) returns text
language sql immutable parallel safe called on null input as $$
    select upper(regexp_replace(case when s is nfkc normalized then s else normalize(s, NFKC) end,
                                '[ \t\n\r\f\v]', '', 'g'))
$$;
