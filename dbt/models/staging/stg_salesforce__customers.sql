-- One row per customer, typed and renamed; ingest bookkeeping columns (`_...`) stay behind.
-- Timestamps become TIMESTAMPTZ: ISO strings keep their offset, naive values are read as UTC.
with source as (

    select * from {{ source('salesforce', 'customers') }}

),

renamed as (

    select
        cast(customer_id as bigint) as customer_id,
        cast(name as varchar) as customer_name,
        lower(cast(email as varchar)) as email,
        cast(country as varchar) as country,
        cast(segment as varchar) as segment,
        cast(created_at as timestamptz) as created_at,
        cast(updated_at as timestamptz) as updated_at,
        cast(total_revenue as decimal(18, 2)) as total_revenue,
        cast(orders_count as integer) as orders_count,
        cast(is_active as boolean) as is_active

    from source

)

select * from renamed
