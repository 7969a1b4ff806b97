-- Identifier checks and text normalization, as SQL functions for the rule views.
-- The same algorithms as src/identifiers.rs (DOMAIN.md §1); both are tested against
-- testdata/identifiers.csv.

create schema core;
comment on schema core is '企业基础信息库：标识符对照、一户一档（以组织机构代码为主键）';

-- 组织机构代码 (GB 11714): 8 characters 0-9A-Z + check (0-9, X).
create function core.is_org_code(c text) returns boolean
language plpgsql immutable strict parallel safe as $$
declare
    w constant int[] := array[3, 7, 9, 10, 5, 8, 4, 2];
    s int := 0;
    r int;
begin
    if c !~ '^[0-9A-Z]{8}[0-9X]$' then
        return false;
    end if;
    for i in 1 .. 8 loop
        s := s + (strpos('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ', substr(c, i, 1)) - 1) * w[i];
    end loop;
    r := 11 - s % 11;
    return substr(c, 9, 1) = case r when 10 then 'X' when 11 then '0' else r::text end;
end $$;
comment on function core.is_org_code(text) is '组织机构代码校验（GB 11714）';

-- 注册号: 15 digits with ISO 7064 MOD 11,10; older 13-digit numbers: format only.
create function core.is_reg_no(n text) returns boolean
language plpgsql immutable strict parallel safe as $$
declare
    p int := 10;
    s int;
begin
    if n ~ '^[0-9]{13}$' then
        return true;
    end if;
    if n !~ '^[0-9]{15}$' then
        return false;
    end if;
    for i in 1 .. 14 loop
        s := (p + substr(n, i, 1)::int) % 10;
        if s = 0 then
            s := 10;
        end if;
        p := (2 * s) % 11;
    end loop;
    return substr(n, 15, 1)::int = (11 - p) % 10;
end $$;
comment on function core.is_reg_no(text) is '工商注册号校验（15位：GB/T 17710 MOD 11,10；13位：仅格式）';

-- 身份证号 (GB 11643): 18 (check + birth date) or 15 (birth date).
create function core.is_id_card(n text) returns boolean
language plpgsql immutable strict parallel safe as $$
declare
    w constant int[] := array[7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    s int := 0;
    birth text;
    y int; m int; d int;
begin
    if n ~ '^[0-9]{17}[0-9X]$' then
        for i in 1 .. 17 loop
            s := s + substr(n, i, 1)::int * w[i];
        end loop;
        if substr(n, 18, 1) <> substr('10X98765432', s % 11 + 1, 1) then
            return false;
        end if;
        birth := substr(n, 7, 8);
    elsif n ~ '^[0-9]{15}$' then
        birth := '19' || substr(n, 7, 6);
    else
        return false;
    end if;
    y := substr(birth, 1, 4)::int;
    m := substr(birth, 5, 2)::int;
    d := substr(birth, 7, 2)::int;
    return y >= 1900 and m between 1 and 12 and d >= 1
        and d <= extract(day from make_date(y, m, 1) + interval '1 month - 1 day');
end $$;
comment on function core.is_id_card(text) is '居民身份证号码校验（GB 11643；15位仅校验出生日期）';

-- 统一社会信用代码 (GB 32100), with its embedded org code.
create function core.is_uscc(c text) returns boolean
language plpgsql immutable strict parallel safe as $$
declare
    alphabet constant text := '0123456789ABCDEFGHJKLMNPQRTUWXY';
    w constant int[] := array[1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
    s int := 0;
begin
    if c !~ '^[0-9ABCDEFGHJKLMNPQRTUWXY]{18}$' then
        return false;
    end if;
    for i in 1 .. 17 loop
        s := s + (strpos(alphabet, substr(c, i, 1)) - 1) * w[i];
    end loop;
    return substr(c, 18, 1) = substr(alphabet, (31 - s % 31) % 31 + 1, 1)
        and core.is_org_code(substr(c, 9, 9));
end $$;
comment on function core.is_uscc(text) is '统一社会信用代码校验（GB 32100，含内嵌组织机构代码）';

-- 纳税人识别号 of the era: division + org code (15); an ID-card number (15/18), possibly
-- followed by 2 digits.
create function core.is_taxpayer_id(t text) returns boolean
language sql immutable strict parallel safe as $$
    select case
        when length(t) = 15 and t ~ '^[0-9]{6}' and core.is_org_code(substr(t, 7)) then true
        when length(t) in (15, 18) then core.is_id_card(t)
        when length(t) in (17, 20) then substr(t, length(t) - 1) ~ '^[0-9]{2}$'
                                     and core.is_id_card(substr(t, 1, length(t) - 2))
        else false
    end
$$;
comment on function core.is_taxpayer_id(text) is '纳税人识别号校验（行政区划+组织机构代码，或身份证号）';

-- 15-digit ID-card numbers to 18.
create function core.id_card_18(n text) returns text
language plpgsql immutable strict parallel safe as $$
declare
    w constant int[] := array[7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    body text;
    s int := 0;
begin
    if n !~ '^[0-9]{15}$' then
        return n;
    end if;
    body := substr(n, 1, 6) || '19' || substr(n, 7);
    for i in 1 .. 17 loop
        s := s + substr(body, i, 1)::int * w[i];
    end loop;
    return body || substr('10X98765432', s % 11 + 1, 1);
end $$;
comment on function core.id_card_18(text) is '15位身份证号升为18位';

-- Names and addresses for comparison: NFKC (width, brackets, the ideographic space), no
-- white space, ASCII upper case. The raw values stay untouched in the exchange tables.
create function core.norm_text(s text) returns text
language sql immutable strict parallel safe as $$
    select upper(regexp_replace(normalize(s, NFKC), '[ \t\n\r\f\v]', '', 'g'))
$$;
comment on function core.norm_text(text) is '名称、地址比对用的规范化：全角转半角（NFKC）、去空白、英文大写';

-- An ID-card number as those not entitled see it: region and last 4 kept.
create function core.mask_id(s text) returns text
language sql immutable strict parallel safe as $$
    select case when length(s) >= 10 then left(s, 6) || repeat('*', length(s) - 10) || right(s, 4)
                else repeat('*', length(s)) end
$$;
comment on function core.mask_id(text) is '证件号码脱敏（保留前6位与后4位）';
