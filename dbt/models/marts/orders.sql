-- One row per order with the customer's segment and country, the way jaffle-shop's orders
-- mart carries its customer. A left join: an order whose customer is unknown stays (with
-- NULL customer columns) so the pipeline's referential check can count it, rather than
-- vanishing from the mart.
with orders as (

    select * from {{ ref('stg_salesforce__orders') }}

),

customers as (

    select customer_id, segment, country from {{ ref('stg_salesforce__customers') }}

)

select
    orders.order_id,
    orders.customer_id,
    orders.ordered_at,
    orders.status,
    orders.order_total,
    orders.status = 'completed' as is_completed,
    customers.segment as customer_segment,
    customers.country as customer_country

from orders
left join customers on orders.customer_id = customers.customer_id
