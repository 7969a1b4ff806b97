-- The pipeline's role takes, renews and gives up leases (0028 created the table without
-- granting it): a pipeline running as a login role with ebis_pipeline could not start.
grant select, insert, update on ebis.lease to ebis_pipeline;
grant select on ebis.lease to ebis_analyst;
