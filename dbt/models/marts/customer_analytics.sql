-- Lifetime value per active month. `months_active` counts whole months from sign-up to the
-- as-of date (var `as_of_date`, default today); customers younger than a month have no
-- monthly LTV yet rather than a division by zero.
{%- set as_of_date = var('as_of_date', none) %}

with customers as (

    select * from {{ ref('stg_salesforce__customers') }}

),

measured as (

    -- Month arithmetic on UTC wall-clock timestamps: calendar arithmetic on TIMESTAMPTZ goes
    -- through ICU and costs about seven times as much per row.
    select
        *,
        date_sub(
            'month',
            created_at at time zone 'UTC',
            {% if as_of_date -%}
            cast('{{ as_of_date }}' as timestamp)
            {%- else -%}
            cast(cast(current_timestamp at time zone 'UTC' as date) as timestamp)
            {%- endif %}
        ) as months_active
    from customers

)

select
    customer_id,
    customer_name,
    email,
    country,
    segment,
    is_active,
    created_at,
    updated_at,
    orders_count,
    total_revenue,
    months_active,
    total_revenue / nullif(months_active, 0) as monthly_ltv,
    total_revenue / nullif(orders_count, 0) as average_order_value

from measured
