-- One row per order, typed and renamed; ingest bookkeeping columns (`_...`) stay behind.
with source as (

    select * from {{ source('salesforce', 'orders') }}

),

renamed as (

    select
        cast(order_id as bigint) as order_id,
        cast(customer_id as bigint) as customer_id,
        cast(ordered_at as timestamptz) as ordered_at,
        cast(status as varchar) as status,
        cast(order_total as decimal(18, 2)) as order_total

    from source

)

select * from renamed
